"""The speed workloads of ``python -m facebench.bench`` that measure this plugin's parts: the
DeepID2 net's training loop, the batched patch ensemble, Joint Bayesian, the protocols scored
with it, and the default job end to end. Registered with ``registry.add_workload``."""
