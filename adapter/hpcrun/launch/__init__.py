"""hpcrun.launch"""
