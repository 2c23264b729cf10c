"""sushy-tools' Redfish emulator with its fake systems driver, for the
fence tests and the fence benchmark (host/tests/common/redfish.rs starts it).

The fake driver applies a power change 1 to 11 seconds after it is asked,
chosen at random, to look like hardware. Here the delay is fixed
(WARDEN_LAB_POWER_DELAY_S, default 1: the change is applied within the
next second), so that runs compare and the tests' bounds hold; everything
else is sushy-tools as released. Arguments are sushy-emulator's.
"""
import os
import sys

from sushy_tools.emulator.resources.systems import fakedriver

DELAY_S = int(os.environ.get("WARDEN_LAB_POWER_DELAY_S", "1"))


class _FixedDelay:
    """Stands in for the `random` module the fake driver draws its delay from."""

    @staticmethod
    def randint(low, high):
        return DELAY_S


fakedriver.random = _FixedDelay

from sushy_tools.emulator import main  # noqa: E402

sys.exit(main.main())
