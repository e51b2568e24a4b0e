"""The mLSTM family: the cell, the Vision-LSTM layer, TM-UNet and xLSTM-UNet."""
