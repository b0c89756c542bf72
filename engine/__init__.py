"""sandboxctl.engine"""
