"""The pure domain: licensing rules, identity matching, the audit chain. No I/O imports here."""
