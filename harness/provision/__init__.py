"""Provisioning: kernels, the guest image and the QEMU the testbed runs on."""


def minutes(seconds: float) -> str:
    """A build's duration as its closing line says it: '5 min 59 s', never '5 min 60 s'."""
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s"
