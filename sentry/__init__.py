"""sandboxctl.sentry"""
