"""Cython's runtime code (memoryviews, conversions) that every generated kernel imports under
this name, compiled once per build environment into the build cache (build.shared_utility).
`load` imports it before a kernel; a kernel imported some other way (`import generated.svm`)
comes here, and this module puts the compiled extension in its own place in sys.modules."""
from . import build

build.load_shared_utility()
