"""One module per screen: sessions, session, diff, review, cache."""
