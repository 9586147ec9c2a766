package weft.rules.ok

warn contains "never" if false
