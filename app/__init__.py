"""ffrtmp: finds transcoding processes, governs them with cgroups, records their lifecycle."""

__version__ = "0.1.0"
