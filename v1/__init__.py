"""Generated gRPC stubs for proto/juggler/v1 (scripts/gen_stubs.py). Do not edit."""
