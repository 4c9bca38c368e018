"""The chain sidecar: a signed, hash-linked ledger of settlements, balances, stake and delegation.

``python -m kubetensor.chain`` runs it (``__main__``); ``commands`` holds the ``kubetensor chain``,
``wallet`` and ``stake`` CLI sub-apps; ``verify.verify_ledger`` checks a ledger file. See docs/chain.md.
"""
