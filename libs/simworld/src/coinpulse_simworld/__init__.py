"""The simulated world both simulators share (see the package description)."""
