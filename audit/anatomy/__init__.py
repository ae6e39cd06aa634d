"""Anatomy audits: does the heart sit where the conditioning mask put it, and is it plausible?"""
