"""KEDA's external scaler interface: ``externalscaler.proto`` and the stubs generated from
it (committed; regenerate with ``make protos``, tests/gateway/test_scaler_units.py checks
they are current). Served by gateway/scaler.py."""
