"""The LTX file format (Litestream 0.5 / superfly/ltx v0.5.2), object stores, replicas and tools."""
