"""The dumps domain: kernel crash dumps where they lie, read with crash and drgn.

Kept empty so that a light module here (drgn_pick, which facts needs at hello) imports without
the domain's code; that lives in service.py, imported at the domain's first call."""
