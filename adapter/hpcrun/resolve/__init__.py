"""hpcrun.resolve"""
