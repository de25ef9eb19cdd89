"""dcxcount: count and stage adult-born neurons in dentate gyrus sections."""

__version__ = "0.1.0"
