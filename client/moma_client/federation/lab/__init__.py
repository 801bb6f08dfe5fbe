"""A lab's role: the Flower ClientApp its SuperNode runs, its data and key (:mod:`.setup`), and
its local training and evaluation (:mod:`.training`)."""
