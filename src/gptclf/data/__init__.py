"""Reading the user's labelled files, mapping labels to class ids, and splitting them."""
