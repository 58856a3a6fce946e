"""seqdance.model"""
