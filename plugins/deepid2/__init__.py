"""DeepID2, the reference method: ConvNet, joint identification-verification loss, Joint Bayesian."""
