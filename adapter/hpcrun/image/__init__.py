"""Reading container images (SIF, squashfs, ext3, sandbox) without starting a container."""
