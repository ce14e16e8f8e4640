"""hpcrun.elf"""
