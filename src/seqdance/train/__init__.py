"""seqdance.train"""
