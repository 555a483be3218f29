"""One exception hierarchy: every error a user can cause is a GlimpseError whose message names
the file (or option) and what is wrong with it, on one line. The CLI prints it and exits 2."""


class GlimpseError(Exception):
    """Bad input: a file, option or argument the user can fix."""


class CheckpointError(GlimpseError):
    """A checkpoint or vocabulary file that cannot be imported."""


class UnsafePickleError(CheckpointError):
    """A pickle that names a global outside the allow-list; nothing from it was run."""


class BundleError(GlimpseError):
    """A bundle directory that is missing, incomplete or tampered with."""


class ExportError(GlimpseError):
    """An exported graph that does not match the reference module."""


class ImageError(GlimpseError):
    """An image file that cannot be read or decoded."""


class BackendUnavailable(GlimpseError):
    """A backend whose package (or device) is not present on this machine."""
