"""emgpose: joint angles from surface EMG (the project's ``shared/`` folder, imported as ``emgpose``)."""

__version__ = "0.1.0"
