"""hpcrun.render"""
