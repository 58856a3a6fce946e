"""seqdance.features"""
