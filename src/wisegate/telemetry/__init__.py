"""What a running Wisegate tells its operator: Prometheus metrics and OpenTelemetry traces.

Every room may record into it (like ``logs``); it imports nothing of ours but ``errors``.
"""
