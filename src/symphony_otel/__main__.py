"""Run the ``symphony-otel`` command as ``python -m symphony_otel``."""

from symphony_otel.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
