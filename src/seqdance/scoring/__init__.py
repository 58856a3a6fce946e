"""seqdance.scoring"""
