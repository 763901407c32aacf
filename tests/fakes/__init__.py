"""Real emulators of cloud DNS APIs for the mirroring tests (moto's server for Route 53; an
ARM DNS emulator for Azure), all on 127.0.0.1."""
