"""The small causal language models kubetensor builds itself (no model hub is needed or reachable).

``task`` defines the checkable task the models learn (reversed-digit addition) and how answers are
scored; ``build`` trains deterministic small Llama-shaped models of several qualities and caches
them by content hash in ``save_pretrained`` format, which vLLM loads.
"""
