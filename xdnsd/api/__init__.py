"""The HTTP JSON API (issue 7): one central view over zones, peers, targets and conflicts."""
