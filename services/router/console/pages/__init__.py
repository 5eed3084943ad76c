"""Console pages: each module defines ``PAGE`` (registry.Page); registry.discover finds them all."""
