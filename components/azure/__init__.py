"""Azure-side components of the cloud stack: network, ARO cluster, peer-pod identity, pod VM gallery."""
