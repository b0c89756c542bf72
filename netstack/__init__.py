"""sandboxctl.netstack"""
