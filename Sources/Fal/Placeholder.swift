enum FalPlaceholder {}
