"""What a running Wisegate tells its operator: logs (JSON or text), Prometheus metrics and OpenTelemetry
traces.

Every room may record into it; it imports nothing of ours but ``errors``.
"""
