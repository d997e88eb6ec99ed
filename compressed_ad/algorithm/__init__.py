"""The PPO source: a numpy VecEnv for SB3, the history-logging callback and one learner per task."""
