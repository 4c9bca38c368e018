"""The kopf operator that reconciles Subnet, Miner and Validator resources (group ``kubetensor.io``).

``python -m kubetensor_operator`` runs it (``__main__``). The pure core is ``model`` (specs),
``desired`` (the child objects a spec asks for) and ``conditions`` (status from what was observed);
``handlers`` is the kopf shell around them; ``kube`` is the only module that talks to the Kubernetes
API and ``consensus`` the only one that talks to a subnet's consensus service. ``runner`` starts the
operator in the background for ``kubetensor sandbox up --with-operator`` and the tests.
"""
