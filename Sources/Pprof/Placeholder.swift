public enum PprofPlaceholder {}
