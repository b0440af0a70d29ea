"""nas-run engine: space -> budget -> data -> train -> study -> retrain -> export."""
