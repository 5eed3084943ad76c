"""The four Rationer gRPC services. Each subpackage has:

* ``settings.py``  typed settings (``load_settings`` in ``main``);
* ``core``/domain modules with no gRPC imports;
* ``servicer.py``   thin gRPC adapter; ``server.py`` with ``create_server``;
* ``main.py``       the entry point; ``cli.py`` registers CLI commands;
* ``tests/``        unit tests next to the logic.
"""
