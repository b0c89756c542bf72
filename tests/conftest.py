"""Shared test set-up. Area helpers live in tests/_helpers_<area>.py and are imported by name."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
