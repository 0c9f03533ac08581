enum FalSimPlaceholder {}
