"""The sending engine: claim deliveries, compose, hand to SMTP, record outcomes."""
