"""Service platform shared by the four Rationer services: settings, logging,
the error/context interceptor, the server factory and metrics."""
