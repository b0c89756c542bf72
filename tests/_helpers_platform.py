"""Platforms every Sentry/launcher acceptance test should run on.

    from _helpers_platform import PLATFORMS, with_platform

    @pytest.mark.parametrize("platform", PLATFORMS)
    def test_x(platform):
        plan = with_platform(compile_plan(...), platform)

or use the `platform` fixture from `platform_param` below:

    from _helpers_platform import platform  # noqa: F401  (a parametrised fixture)
"""

from __future__ import annotations


import pytest

PLATFORMS = ["seccomp-notify", "ptrace"]


def with_platform(plan, platform: str):
    """The same Plan with launch.platform set (the filter and the Sentry follow it)."""
    return plan._replace(launch=plan.launch._replace(platform=platform))


@pytest.fixture(params=PLATFORMS)
def platform(request) -> str:
    return request.param


__all__ = ["PLATFORMS", "with_platform", "platform"]
