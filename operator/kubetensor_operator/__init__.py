"""The kopf operator that reconciles Subnet, Miner and Validator resources (group kubetensor.io).

Not implemented yet: it arrives with the operator issue. The package exists so the layout and the
import rules are in place from the start.
"""
