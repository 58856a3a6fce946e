"""seqdance.store"""
