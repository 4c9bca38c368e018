"""Generated from protos/kubetensor/v1 by `make proto`. Do not edit."""
