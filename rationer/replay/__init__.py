"""Traffic replay: build or import a trace, drive a gateway with it, report savings.

``trace`` (format), ``synth`` (generator), ``importer`` (OpenAI request logs),
``provision`` (keys and budgets from a trace), ``driver`` (the replay),
``analysis`` (quality, baselines), ``report`` (Markdown and plots), ``cli``.
"""
