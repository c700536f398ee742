"""What the entry points share: the model's configuration, the continued run's options, the builders.

The entry points (train.py, test.py, localize.py, visualize.py) parse their flags and call these; this
package wires model/, dataset/ and utils/ together and holds no logic of the method itself.
"""
